"""LightningModules of rnnlab's experiments."""

from .language_modeling import LanguageModelTask

__all__ = ["LanguageModelTask"]
