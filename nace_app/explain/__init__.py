"""Why a model chose a code: integrated gradients and occlusion (`attributions`), highlights, per-class words."""
