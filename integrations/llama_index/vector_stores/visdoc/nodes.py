"""LlamaIndex nodes and visdoc points: what a node is embedded from, its payload, and the node a point
becomes again."""

from __future__ import annotations

import base64
import json
from typing import Any

from llama_index.core.schema import BaseNode, ImageNode, TextNode
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict

from visdoc.documents import page_data_uri
from visdoc.points import IMAGE_PATH, NODE, REF_DOC_ID, TEXT, framework_payload, unpack

__all__ = ["image_input", "payload", "to_node"]


def image_input(node: BaseNode) -> Any:
    """What the store embeds for an image node, in the order of LlamaIndex's ``resolve_image`` (so
    it is what the index's embedding model saw): the decoded base64 ``image``, else ``image_path``,
    else a visdoc page reference in the metadata (``file.pdf#page=N``). None for other nodes and
    image nodes without an image (embedded as text)."""
    if not isinstance(node, ImageNode):
        return None
    if node.image:
        return base64.b64decode(node.image)
    if node.image_path:
        return node.image_path
    if node.metadata.get(IMAGE_PATH):
        return node.metadata[IMAGE_PATH]
    if node.image_url:
        raise ValueError(
            f"VisdocVectorStore does not download images: node {node.node_id!r} has only an image_url; "
            "give it the image (base64 image) or an image_path"
        )
    return None


def payload(node: BaseNode, kind: str) -> dict[str, Any]:
    """The stored payload of a node (its text once, its metadata, the node as LlamaIndex serialises it)."""
    data = framework_payload(node.node_id, node.get_content(), node.metadata, kind)  # type: ignore[arg-type]
    return data | {REF_DOC_ID: node.ref_doc_id, NODE: _node_dict(node)}


def _node_dict(node: BaseNode) -> dict[str, Any]:
    """The node as LlamaIndex serialises it, without the text (kept once, in ``text``) or base64 image."""
    data = node_to_metadata_dict(node, remove_text=True, flat_metadata=False)
    content = json.loads(data["_node_content"])
    content.pop("image", None)
    data["_node_content"] = json.dumps(content)
    return data


def to_node(point: Any) -> BaseNode:
    """A node from a stored point; points written by ``visdoc ingest`` become Text/ImageNodes."""
    data = point.payload
    if NODE in data:
        node = metadata_dict_to_node(data[NODE], text=data.get(TEXT))
    else:
        doc_id, text, metadata = unpack(point)
        node = (
            ImageNode(id_=doc_id, text=text, metadata=metadata)
            if metadata.get(IMAGE_PATH)
            else TextNode(id_=doc_id, text=text, metadata=metadata)
        )
    reference = node.metadata.get(IMAGE_PATH)
    if isinstance(node, ImageNode) and not (node.image or node.image_path) and reference:
        node.image = page_data_uri(reference).split(",", 1)[1]  # rendered again for multimodal LLMs
    return node
