"""The Gradio app: `layout` builds the page (`build_demo`), `handlers` answers its events and the API, `catalogue`
says which networks there are and loads them; the HTML comes from mmdemo.render."""

from .layout import build_demo

__all__ = ["build_demo"]
