"""The shop's data as the rest of the library sees it: :class:`~ltvcast.data.datasets.History` and the built-in datasets."""
