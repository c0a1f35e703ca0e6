"""Large models: plans of time and memory (``plan``), blocks streamed from and to disk
(``streaming``) and compression over several ranks (``distributed``)."""
