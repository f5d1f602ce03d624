"""Texts the encoder tests share."""

# Mixed lengths, several languages, punctuation (the ColBERT skiplist) and a repeat length.
TEXTS = [
    "Wireless headphones",
    "Auriculares inalámbricos con cancelación de ruido, 30 horas de batería.",
    "Kopfhörer!",
    "Ergonomic office chair; adjustable lumbar support (black), fits desks 70-80 cm high.",
    "Trail shoes",
    "Une gourde en acier inoxydable de 750 ml qui garde les boissons fraîches.",
]

# Lengths from 2 to ~60 tokens, so any batch of several texts holds padding.
MIXED = [*TEXTS, "shoes", "A long description. " * 12, "Waterproof hiking boots with a Vibram sole, size 44."]
