"""Training/evaluation data sets (EMIDEC PNG slices, MyoPS NIfTI volumes) and CV folds."""
