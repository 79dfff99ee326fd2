"""One error type for bad user input: the CLI prints its message and exits with code 2."""


class UserError(Exception):
    """Bad input (a name, a file, a field, a config value). The message names what and where."""
