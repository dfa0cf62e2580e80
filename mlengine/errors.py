"""The one error family the CLI turns into a one-line message and a non-zero exit."""


class MlengineError(Exception):
    """A problem the user can fix; str(err) is one line naming the file, row, field or URL."""


class DataError(MlengineError, ValueError):
    """Input data that cannot be read at all (missing file, wrong header, bad encoding...)."""
