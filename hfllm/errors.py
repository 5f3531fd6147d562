"""The one exception type for mistakes a user can fix (bad config, path, data, prompt).

The CLI prints these as a single line, without a traceback (``--debug`` shows it).
"""


class UserError(Exception):
    """A problem in what the user gave us, with a message saying how to fix it."""
