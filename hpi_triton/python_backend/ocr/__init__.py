"""The OCR flow (detection → crops → orientation → recognition) and its ops, seal text included."""
