// DICOM Part 10 encoding of a naturalized dataset with dcmjs (the library OHIF itself uses),
// so what the tests read back is byte-for-byte what the viewer sends by STOW-RS.
import dcmjs from 'dcmjs';

const { DicomDict, DicomMetaDictionary, DicomMessage } = dcmjs.data;

/** Part 10 bytes of `dataset`; its `_meta` (naturalized file meta) gives the transfer syntax. */
export function writePart10(dataset) {
  const { _meta: meta, ...rest } = dataset;
  if (!meta) throw new Error('dataset has no _meta (file meta information)');
  const dict = new DicomDict(DicomMetaDictionary.denaturalizeDataset(meta));
  dict.dict = DicomMetaDictionary.denaturalizeDataset(rest);
  return dict.write();
}

/** Naturalized dataset of Part 10 bytes (pixel data kept as ArrayBuffers). */
export function readPart10(arrayBuffer) {
  const dict = DicomMessage.readFile(arrayBuffer);
  const ds = DicomMetaDictionary.naturalizeDataset(dict.dict);
  ds._meta = DicomMetaDictionary.naturalizeDataset(dict.meta);
  return ds;
}
