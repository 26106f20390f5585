"""rnn-sentiment: IMDB sentiment with recurrent networks, a DVC pipeline tracked in MLflow."""

__version__ = "0.1.0"
