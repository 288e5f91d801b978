"""Document flows: doc_preprocessor (orientation, unwarping), tables and layout parsing."""
