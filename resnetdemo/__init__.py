"""The ResNet demo: components for image classification with playground."""
