"""Spiking building blocks shared by several methods (networks, neurons, encoders, surrogates)."""
