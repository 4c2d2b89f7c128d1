"""The analyzer's one exception family. The CLI turns these into one-line errors, exit code 2."""


class SteadytrainError(Exception):
    """Base of every error the tool raises on purpose (bad input, bad config)."""


class InputError(SteadytrainError):
    """A path that does not exist, holds no logs, or where nothing at all could be read."""


class LogFormatError(SteadytrainError):
    """A file that claims a format but cannot be decoded as it (the file is skipped, not fatal)."""


class ConfigError(SteadytrainError):
    """A threshold, role override or option with a value outside what it allows."""
