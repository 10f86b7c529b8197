"""The built-in model recipes; ``Project.model_name`` names one of them."""

from __future__ import annotations

from labelandlearn.learning.base import ModelRecipe, register_recipe

# Character n-grams of 3 to 4: in 5-fold cross-validation on the 5,515 deduplicated Ethereum
# tweets they scored 0.682 3-class and 0.811 useful-vs-useless macro-F1, against 0.679 and 0.815
# for 2 to 4, with 30% fewer non-zero features per text (278 against 400), so transform and the
# SGD epochs run about that much faster.
TFIDF_PARAMS = {"word_ngram_range": [1, 2], "char_ngram_range": [3, 4], "min_df": 2}

register_recipe(
    ModelRecipe(
        name="tfidf-linear",
        featurizer="tfidf",
        classifier="linear",
        featurizer_params=TFIDF_PARAMS,
        description="Linear classifier on TF-IDF word 1-2 and character 3-4 n-grams.",
    )
)

register_recipe(
    ModelRecipe(
        name="hashing-linear",
        featurizer="hashing",
        classifier="linear",
        featurizer_params={"word_ngram_range": [1, 2], "char_ngram_range": [2, 4]},
        description=(
            "Linear classifier on hashed word and character n-grams; needs no vocabulary, so it "
            "learns from the first answer and suits endless streams."
        ),
    )
)
