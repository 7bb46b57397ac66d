"""Pure ML for the inspection platform: synthetic phones, the network, training, inference,
metrics, drift statistics and export. Imports torch, numpy and Pillow only, never Django."""
