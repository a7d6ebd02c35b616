"""What a compiled graph costs and looks like: per-layer reports (report.py), activation memory
(memory.py), receptive fields (receptive.py) and diagrams (diagram.py). They read the IR and the op
classes; nothing in the compiler imports them."""
