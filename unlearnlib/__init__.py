"""unlearnlib: machine unlearning algorithms, metrics and attacks for the course
"Machine Unlearning: an executable course".

Importing the package touches no network and loads no dataset.
"""

__version__ = "0.1.0"

from . import data, distill, ensemble, models, plotting, training  # noqa: E402
from .data import class_forget_split, load_dataset, random_forget_split  # noqa: E402
from .models import build_model  # noqa: E402
from .training import evaluate, fit, get_device, predict_proba, seed_everything  # noqa: E402

__all__ = [
    "__version__",
    "data",
    "distill",
    "ensemble",
    "models",
    "plotting",
    "training",
    "load_dataset",
    "class_forget_split",
    "random_forget_split",
    "build_model",
    "fit",
    "evaluate",
    "predict_proba",
    "get_device",
    "seed_everything",
]
