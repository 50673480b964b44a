"""Japanese text handling: normalisation and the morphological analyser."""
