"""LightningModules of rnnlab's experiments."""

from .base import Task
from .language_modeling import LanguageModelTask
from .sentiment import SentimentTask

__all__ = ["LanguageModelTask", "SentimentTask", "Task"]
