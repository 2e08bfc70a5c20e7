"""What the arXiv categories readers pick are about, in words the ranking can match.

Papers from sources without categories (the bundled corpus, many Hugging Face
papers) can still be matched to a reader's categories by these topic phrases.
"""

CATEGORY_TOPICS = {
    "cs.LG": ("Machine learning", "machine learning, deep learning, neural network training"),
    "cs.CL": ("Computation and language", "natural language processing, language models, text"),
    "cs.CV": ("Computer vision", "computer vision, image generation, images, video"),
    "cs.AI": ("Artificial intelligence", "artificial intelligence, reasoning, planning, agents"),
    "stat.ML": ("Statistical machine learning", "statistical learning, bayesian inference, probabilistic models"),
    "cs.RO": ("Robotics", "robotics, robot manipulation, embodied agents, control"),
    "cs.IR": ("Information retrieval", "information retrieval, search, recommendation, ranking"),
    "cs.NE": ("Neural and evolutionary computing", "evolutionary algorithms, spiking neural networks"),
    "cs.SD": ("Sound", "audio generation, music, sound"),
    "eess.AS": ("Audio and speech", "speech recognition, speech synthesis, audio"),
}


def category_label(code):
    return CATEGORY_TOPICS.get(code, (code, ""))[0]


def category_topic(code):
    """The topic phrase for a category; empty for categories we know nothing about."""
    return CATEGORY_TOPICS.get(code, ("", ""))[1]
