"""The one error type of the hyperparameter system."""


class ParamsError(ValueError):
    """A parameter key, value, file or override string is invalid.

    The message is a single line that names the offending key, value or file, so that the
    command line can print it as is.
    """
