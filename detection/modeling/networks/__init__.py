"""Networks: already-built parts (backbone, decoder, heads) composed into one keras.Model."""
