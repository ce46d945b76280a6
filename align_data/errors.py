"""The one exception type a user can fix; its message says what to change."""


class AlignDataError(Exception):
    """A problem with the user's input, config or environment, stated so they can fix it."""


class ServiceUnavailable(AlignDataError):
    """A service every row depends on (an LLM server) is down: the build stops instead of writing a corpus of
    error records. Raised by a stage; never turned into a record error."""
