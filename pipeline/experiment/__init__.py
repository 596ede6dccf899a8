"""Issue 6's experiment: arms with and without synthetic data, paired bootstrap over cases."""
