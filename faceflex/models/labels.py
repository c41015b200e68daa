"""What the classifiers output: label names and units shared by training and inference."""

import numpy as np

# The CelebA attributes the attribute model predicts (No_Beard is reported inverted, as "beard").
ATTRIBUTES = ["Male", "Smiling", "Eyeglasses", "Wearing_Hat", "No_Beard", "Mustache", "Bangs", "Heavy_Makeup", "Wearing_Lipstick", "Young"]
# In the order of the shared FER2013 labels.csv (0 angry ... 4 neutral, 5 sad, 6 surprise); the
# expression set maps the csv's emotion *names* onto this list, so the order cannot drift.
EXPRESSIONS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
GENDERS = ["male", "female"]
AGE_UNIT = 10.0  # the age model's age head predicts years / 10
AGE_MAX = 100  # the face model's age head: a distribution over whole years 0..AGE_MAX (softmax logits)
AGE_BANDS = {"<20": (0, 20), "20-40": (20, 40), "40-60": (40, 60), "60+": (60, 200)}  # [low, high) years, for reporting
UTK_RACES = ["White", "Black", "Asian", "Indian", "Others"]  # UTKFace's race codes 0-4


def age_distribution(age_logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(years, spread) (N,) each from the face model's age logits (N, AGE_MAX + 1) over whole years
    0..AGE_MAX: the mean and the standard deviation of their softmax. The spread says how sure the
    estimate is (UTKFace test: MAE 2.7 years where it is under 7.7, 8.8 above)."""
    z = age_logits - age_logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    years = np.arange(age_logits.shape[1], dtype=np.float64)
    mean = p @ years
    return mean, np.sqrt(np.maximum(p @ years**2 - mean**2, 0.0))


def expected_age(age_logits: np.ndarray) -> np.ndarray:
    """Years (N,) from the face model's age logits (N, AGE_MAX + 1): the mean of their softmax."""
    return age_distribution(age_logits)[0]
