"""Pay-as-you-go balances: debits per job, top-ups and recharges, and the rules that decide on them."""
