"""Face geometry: detection, landmarks, alignment to the 128x128 template, masks and paste-back."""
