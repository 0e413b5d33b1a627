"""synalign.evals."""
