"""The one exception type a user can fix; its message says what to change."""


class AlignDataError(Exception):
    """A problem with the user's input, config or environment, stated so they can fix it."""
