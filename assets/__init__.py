"""The MNIST assets: raw data, trained model, predictions."""
