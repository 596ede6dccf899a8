"""Training of the LV localiser and the segmenter (Keras 3: TensorFlow on CPU, JAX on GPU)."""
