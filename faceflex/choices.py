"""The named choices users pick from, in one place: the config schema, the CLI and the code all read them here.

Plain tuples only (no imports), so the CLI can build its ``--help`` without loading numpy or torch.
"""

DEVICES = ("auto", "cpu", "cuda")
DETECTORS = (
    "hog",
    "cnn",
    "hog+cnn",
    "hog+masked",
    "hog+masked+cnn",
    "hog+masked+upper",
)  # dlib's HOG (fast, frontal), CNN (MMOD: slower, more poses), both merged,
# or HOG + faceflex's HOG detector for masked faces (data/masked_face_detector.svm; as fast as HOG)
# [+ its upper-face detector (data/upper_face_detector.svm): the brows and eyes whatever hides the rest]
FACES = ("all", "largest")  # which faces of a photo a command works on
MANIFEST_FORMATS = ("json", "jsonl", "csv")
REGIONS = ("face", "mouth", "eyes", "upper-lip", "lower-face")  # soft landmark masks (faceflex.face.masks)
# residual: photo + mask x (decode(z + a v) - decode(z)); replace: the decoded face; warp: the photo's own
# pixels moved as the latent moves the landmarks; hybrid: warp, then the appearance change a warp cannot make;
# paint: glasses drawn from the landmarks, or the attribute painter repaints the attribute's region (eyes, mouth, upper lip);
# auto: the mode measured best for the attribute (faceflex.steps.edit.AUTO_MODES)
# attributes that go with many others in CelebA-HQ: the prototypes balance each between the two groups of every other attribute
PROTOTYPES_BALANCED = ("Male", "Young", "Smiling", "Mouth_Slightly_Open", "Eyeglasses", "No_Beard")
EDIT_MODES = ("auto", "residual", "replace", "warp", "hybrid", "paint", "prototype")
GLASSES_KINDS = ("rectangle", "round", "wayfarer", "metal", "sunglasses")  # frames drawn by paint mode (faceflex.face.glasses)
# what paint mode edits (faceflex.inference.attribute_painting.PAINTED)
PAINTED_ATTRIBUTES = ("Eyeglasses", "Mustache", "Smiling", "Wearing_Lipstick", "Male", "Young", "No_Beard")
EDIT_REGIONS = ("auto", *REGIONS)  # auto: the region where the attribute lives (faceflex.steps.edit.AUTO_REGIONS)
BACKENDS = ("local", "ray")  # where batch jobs run: local processes (--workers) or Ray actors (faceflex.pipeline.executors)
CLASSIFIER_TASKS = ("attributes", "expression", "age", "face")
CLASSIFIER_ARCHITECTURES = ("mini_xception", "vgg")  # faceflex.models.classifier_nets
CLASS_WEIGHTINGS = ("none", "sqrt", "balanced")  # cross-entropy class weights: 1, 1/sqrt(share), 1/share (mean 1)
MASK_KINDS = ("surgical", "surgical_blue", "surgical_green", "N95", "KN95", "cloth", "gas")  # MaskTheFace's templates
MASK_TYPES = (*MASK_KINDS, "random")  # `faceflex mask --type`: random draws one per face from the seed
ANONYMIZE_METHODS = ("generate", "blur", "pixelate")  # `faceflex anonymize --method`: a new face, or the usual obscuring
