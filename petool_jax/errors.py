"""The one exception type for bad user input (printed by the CLI without a traceback)."""


class UserError(Exception):
    """An error caused by the user's input: a file, key or value that is wrong."""
