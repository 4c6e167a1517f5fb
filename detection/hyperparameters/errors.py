"""The one error type of the hyperparameter system."""


class ParamsError(ValueError):
    """A parameter key, value, file or override string is invalid.

    The message is a single line that names the offending key, value or file, so that the
    command line can print it as is: line breaks of quoted user text are escaped here.
    """

    def __init__(self, message):
        super().__init__(str(message).replace("\r", "\\r").replace("\n", "\\n"))
