"""The error family: every error df2infer raises on purpose is a Df2inferError, in one of two branches.

    Df2inferError
      InputError        something the caller gave cannot be used: an image (images.ImageError), a video
                        source (stream.sources.SourceError), a dataset (data.annotations.AnnotationError),
                        result files (eval.results.ResultFormatError), an option (OptionError), a gallery
                        (retrieval.gallery.GalleryError)
      ModelError        the model cannot be loaded or run: artifact.ModelLoadError (and
                        EngineCompatibilityError), contract.ContractError, backends.base.DeviceError,
                        MissingPartError (the artifact lacks an optional part, e.g. the similarity head)

Each public subclass also keeps the builtin base it had before the family existed (ValueError or
RuntimeError), so code written as `except ValueError` still catches it.
"""

from __future__ import annotations


class Df2inferError(Exception):
    """Base of every error df2infer raises on purpose; the message names the file, the value and what was expected."""


class InputError(Df2inferError):
    """An input (image, source, data set, option, result file) cannot be used."""


class ModelError(Df2inferError):
    """The model artifact cannot be loaded or run on this device."""


class OptionError(InputError, ValueError):
    """An option has a value outside its allowed range (the message names the option, the value and the range)."""


class MissingPartError(ModelError, ValueError):
    """The artifact lacks an optional part (e.g. the similarity head); callers that can do without it catch this."""


__all__ = ["Df2inferError", "InputError", "MissingPartError", "ModelError", "OptionError"]
