"""Vision tasks: pre- and post-processing of classification, detection and segmentation."""
