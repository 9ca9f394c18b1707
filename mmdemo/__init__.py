"""mmdemo: image + caption classification with five published fusion networks and their baselines.

Importing mmdemo reads no weights and touches no network; encoders and checkpoints load on request.
"""

__version__ = "0.1.0"
