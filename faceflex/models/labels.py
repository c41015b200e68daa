"""What the classifiers output: label names and units shared by training and inference."""

# The CelebA attributes the attribute model predicts (No_Beard is reported inverted, as "beard").
ATTRIBUTES = ["Male", "Smiling", "Eyeglasses", "Wearing_Hat", "No_Beard", "Mustache", "Bangs", "Heavy_Makeup", "Wearing_Lipstick", "Young"]
EXPRESSIONS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
GENDERS = ["male", "female"]
AGE_UNIT = 10.0  # the age head predicts years / 10
