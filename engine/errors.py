"""The errors a user can cause (a bad setting, path, file line or checkpoint), gathered so
entry points print them as one line and exit non-zero instead of a traceback."""
from __future__ import annotations

from engine.checkpoint import CheckpointError
from engine.config import ConfigError as ModelConfigError
from engine.selfalign.extension import ExtensionError
from engine.selfalign.records import RecordFormatError
from engine.selfalign.seeds import SeedFormatError
from engine.settings import SettingsError
from engine.tokenizer import TokenizerError
from engine.training.data import DataError
from engine.training.trainer import ResumeError

USER_ERRORS: tuple[type[BaseException], ...] = (
    SettingsError, ModelConfigError, CheckpointError, TokenizerError, DataError, ResumeError,
    SeedFormatError, RecordFormatError, ExtensionError, FileNotFoundError, NotADirectoryError)
