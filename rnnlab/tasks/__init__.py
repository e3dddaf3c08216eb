"""LightningModules of rnnlab's experiments."""

from .base import Task
from .forecasting import ForecastTask
from .language_modeling import LanguageModelTask
from .sentiment import SentimentTask

__all__ = ["ForecastTask", "LanguageModelTask", "SentimentTask", "Task"]
