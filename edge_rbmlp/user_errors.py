"""Which exceptions are the user's input errors (a bad file, architecture, image, text, backend):
every front end answers them with one clear line instead of a traceback (the CLI's ``Error: ...``
and exit status 1, the device app's commands the same)."""

from __future__ import annotations


def user_error_types() -> tuple:
    """The project's input errors (imported when asked, so that importing this module is free)."""
    from .arch import ArchError
    from .engines.base import BackendUnavailable, InputKindError
    from .image import ImageError
    from .inputs import InputSpecError
    from .model_file import ModelFormatError
    from .text import TextError

    return (ArchError, ModelFormatError, ImageError, TextError, InputSpecError, InputKindError,
            BackendUnavailable, FileNotFoundError, IsADirectoryError, PermissionError)
