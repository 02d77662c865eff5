"""What serving raises for problems a caller can act on."""


class ModelBusy(TimeoutError):
    """The model did not become free within the time a request allows; the message says to try again."""
