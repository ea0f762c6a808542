"""The RapidAPI channel: marketplace users and their accounts, what we declared, what RapidAPI reported."""
