"""Sample inputs for the demo: real MNIST test digits and IMDB test reviews."""

from pathlib import Path

SAMPLES_DIR = Path(__file__).resolve().parent
