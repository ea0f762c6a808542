"""The processes that run: FastStream consumers, the HTTP apps, the CLI, and adapters to the outside world."""
