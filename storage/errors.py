"""The one exception type the storage package raises for problems a user can fix."""


class StoreError(Exception):
    """A storage operation failed; the message says what the user should do."""
