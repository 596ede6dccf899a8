"""Write DICOM MR series (classic one-file-per-slice or Enhanced MR multi-frame) from a `Volume`.

The writer shared by the lab (`lgenode pipeline to-dicom`), the node's tests and the benchmarks:
pixels and geometry come from the `Volume` (positions, orientation, spacing are written as
given), identifiers from a `StudyContext`. Files are explicit VR little endian and pass
``dciodvfy`` without errors. With ``StudyContext.seed`` set, every UID is derived from the seed
and the case id, so reruns give byte-identical files.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

from models.volume import Volume

__all__ = [
    "MR_IMAGE_STORAGE",
    "ENHANCED_MR_IMAGE_STORAGE",
    "PROTOCOLS",
    "SeriesKind",
    "StudyContext",
    "resample_inplane",
    "series_datasets",
    "enhanced_mr_dataset",
    "write_series",
    "write_enhanced_series",
    "write_stack_series",
]

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"
SeriesKind = Literal["lge", "cine"]

MANUFACTURER = "LGENODE"
SOFTWARE_VERSION = "lgenode-0.1"


@dataclass(frozen=True)
class _Protocol:
    """MR acquisition attributes of one kind of series (plausible 1.5 T cardiac values)."""

    series_number: int
    description: str
    protocol_name: str
    sequence_name: str
    scanning_sequence: tuple[str, ...]
    sequence_variant: tuple[str, ...]
    scan_options: tuple[str, ...]
    repetition_time: float
    echo_time: float
    flip_angle: float
    inversion_time: float | None
    trigger_time: float
    series_time: str
    contrast_agent: str | None
    # Enhanced MR descriptors
    acquisition_contrast: str
    echo_pulse_sequence: str
    steady_state: str


PROTOCOLS: dict[str, _Protocol] = {
    # Segmented inversion-recovery turbo FLASH about 10 minutes after gadolinium.
    "lge": _Protocol(
        series_number=12,
        description="LGE PSIR SAX",
        protocol_name="tfl_psir_sax",
        sequence_name="*tfl2d1",
        scanning_sequence=("GR", "IR"),
        sequence_variant=("SK", "SP", "MP"),
        scan_options=("PFP", "CG"),
        repetition_time=750.0,
        echo_time=3.28,
        flip_angle=25.0,
        inversion_time=300.0,
        trigger_time=400.0,
        series_time="094500",
        contrast_agent="GADOBUTROL",
        acquisition_contrast="T1",
        echo_pulse_sequence="GRADIENT",
        steady_state="NONE",
    ),
    # Balanced SSFP (TrueFISP) cine before contrast, one phase per slice.
    "cine": _Protocol(
        series_number=5,
        description="CINE SAX",
        protocol_name="trufi_cine_sax",
        sequence_name="*tfi2d1_25",
        scanning_sequence=("GR",),
        sequence_variant=("SK", "SS"),
        scan_options=("CG",),
        repetition_time=40.0,
        echo_time=1.2,
        flip_angle=60.0,
        inversion_time=None,
        trigger_time=0.0,
        series_time="091500",
        contrast_agent=None,
        acquisition_contrast="UNKNOWN",  # bSSFP: T2/T1, no enumerated value fits
        echo_pulse_sequence="GRADIENT",
        steady_state="FREE_PRECESSION",
    ),
}


@dataclass
class StudyContext:
    """What the series of one study share: patient, study, frame of reference, equipment.

    Parameters
    ----------
    case_id:
        Identifies the study; part of the patient identifiers and of derived UIDs.
    seed:
        When set, every UID is derived from it and ``case_id`` (reproducible files).
    patient_prefix:
        ``PatientName`` is ``<prefix>^<case_id>``, ``PatientID`` ``<prefix>-<case_id>``.
    source:
        Where the pixels come from; written into ``DeidentificationMethod``.
    model_name:
        ``ManufacturerModelName`` of the (synthetic) equipment.
    """

    case_id: str
    seed: int | None = None
    study_uid: str = ""
    frame_of_reference_uid: str = ""
    study_date: str = "20200101"
    study_time: str = "090000"
    patient_prefix: str = "SYNTH"
    source: str = "a generated phantom"
    model_name: str = "lgenode study writer"

    def __post_init__(self) -> None:
        if not self.study_uid:
            self.study_uid = self.uid("study")
        if not self.frame_of_reference_uid:
            self.frame_of_reference_uid = self.uid("frame-of-reference")

    def uid(self, *parts: object) -> str:
        """A valid UID, deterministic when ``seed`` is set."""
        if self.seed is None:
            return generate_uid()
        return generate_uid(entropy_srcs=[str(self.seed), self.case_id, *map(str, parts)])


def resample_inplane(volume: Volume, rows: int, cols: int, order: int = 1) -> Volume:
    """Resample every slice to ``rows x cols`` with square pixels, keeping the geometry exact.

    The pixel size is chosen so that the shorter field-of-view side fills the matrix; the
    longer side is cropped about the centre (the heart sits near the centre of a SAX stack).
    Linear interpolation (``order=1``) for images, nearest (``order=0``) for labels.
    """
    from scipy.ndimage import affine_transform

    n, r_src, c_src = volume.shape
    rs, cs = volume.pixel_spacing
    size = min(r_src * rs / rows, c_src * cs / cols)
    # Source (fractional) index of target pixel (u, v): centre-aligned grids.
    scale = np.array([size / rs, size / cs])
    offset = np.array([(r_src - 1) / 2.0, (c_src - 1) / 2.0]) - scale * np.array(
        [(rows - 1) / 2.0, (cols - 1) / 2.0]
    )
    src = volume.pixels
    out = np.empty((n, rows, cols), dtype=np.float32 if order else src.dtype)
    for k in range(n):
        out[k] = affine_transform(
            src[k].astype(np.float32) if order else src[k], scale, offset=offset,
            output_shape=(rows, cols), order=order, mode="nearest",
        )
    if order and np.issubdtype(src.dtype, np.integer):
        info = np.iinfo(src.dtype)
        out = np.clip(np.rint(out), info.min, info.max).astype(src.dtype)
    shift = offset[0] * rs * volume.column_direction + offset[1] * cs * volume.row_direction
    return replace(
        volume,
        pixels=out,
        pixel_spacing=(float(size), float(size)),
        positions=volume.positions + shift,
        meta={**volume.meta, "resampled_from": (r_src, c_src)},
    )


# --------------------------------------------------------------------------- classic MR


def _ds(value: float) -> str:
    return format_number_as_ds(float(value))


def _pixel_format(pixels: np.ndarray) -> tuple[np.dtype, int, int]:
    """(stored dtype, BitsStored, PixelRepresentation) for integer-valued pixels."""
    lo, hi = float(np.min(pixels)), float(np.max(pixels))
    if lo >= 0:
        bits = 12 if hi < 4096 else 16
        return np.dtype("<u2"), bits, 0
    return np.dtype("<i2"), 16, 1


def _window(pixels: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(pixels, [1.0, 99.5])
    return float((lo + hi) / 2.0), float(max(hi - lo, 1.0))


def _base_dataset(ctx: StudyContext, proto: _Protocol, series_uid: str, sop_class: str) -> Dataset:
    """Patient, study, series, frame of reference and equipment modules."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.InstanceCreationDate = ctx.study_date
    ds.InstanceCreationTime = proto.series_time
    # Patient (synthetic identifiers only)
    ds.PatientName = f"{ctx.patient_prefix}^{ctx.case_id}"
    ds.PatientID = f"{ctx.patient_prefix}-{ctx.case_id}"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = f"Synthetic identifiers; pixels from {ctx.source}"
    # General Study
    ds.StudyInstanceUID = ctx.study_uid
    ds.StudyDate = ctx.study_date
    ds.StudyTime = ctx.study_time
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.StudyDescription = "Cardiac MRI^Viability"
    # General Series / MR Series
    ds.Modality = "MR"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = proto.series_number
    ds.SeriesDescription = proto.description
    ds.SeriesDate = ctx.study_date
    ds.SeriesTime = proto.series_time
    ds.ProtocolName = proto.protocol_name
    ds.BodyPartExamined = "HEART"
    ds.PatientPosition = "HFS"
    # Frame of Reference
    ds.FrameOfReferenceUID = ctx.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    # General Equipment
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = ctx.model_name
    ds.SoftwareVersions = SOFTWARE_VERSION
    ds.DeviceSerialNumber = "0001"
    ds.InstitutionName = "Synthetic"
    ds.StationName = "LGENODE"
    ds.MagneticFieldStrength = "1.5"
    return ds


def _file_meta(sop_class: str, sop_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def _classic_template(volume: Volume, ctx: StudyContext, proto: _Protocol,
                      series_uid: str) -> tuple[Dataset, np.dtype]:
    """Everything that is the same for all slices of a classic MR series, and the pixel dtype."""
    ds = _base_dataset(ctx, proto, series_uid, MR_IMAGE_STORAGE)
    dtype, bits, rep = _pixel_format(volume.pixels)
    rows, cols = volume.pixels.shape[1:]
    row_sp, col_sp = volume.pixel_spacing
    # General Image / MR Image
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    ds.AcquisitionNumber = 1
    ds.ContentDate = ctx.study_date
    ds.AcquisitionDate = ctx.study_date
    ds.ScanningSequence = list(proto.scanning_sequence)
    ds.SequenceVariant = list(proto.sequence_variant)
    ds.ScanOptions = list(proto.scan_options)
    ds.MRAcquisitionType = "2D"
    ds.SequenceName = proto.sequence_name
    ds.AngioFlag = "N"
    ds.RepetitionTime = _ds(proto.repetition_time)
    ds.EchoTime = _ds(proto.echo_time)
    if proto.inversion_time is not None:
        ds.InversionTime = _ds(proto.inversion_time)
    ds.NumberOfAverages = "1"
    ds.ImagingFrequency = "63.676"
    ds.ImagedNucleus = "1H"
    ds.EchoNumbers = "1"
    ds.EchoTrainLength = "1"
    ds.SpacingBetweenSlices = _ds(volume.slice_spacing or volume.slice_thickness or 1.0)
    ds.NumberOfPhaseEncodingSteps = str(int(rows * 0.75))
    ds.PercentSampling = "100"
    ds.PercentPhaseFieldOfView = _ds(100.0 * rows * row_sp / (cols * col_sp))
    ds.PixelBandwidth = "465"
    ds.ReceiveCoilName = "Body"
    ds.TransmitCoilName = "Body"
    ds.AcquisitionMatrix = [0, cols, int(rows * 0.75), 0]
    ds.InPlanePhaseEncodingDirection = "ROW"
    ds.FlipAngle = _ds(proto.flip_angle)
    ds.TriggerTime = _ds(proto.trigger_time)
    ds.HeartRate = "68"
    ds.CardiacNumberOfImages = "1"
    if proto.contrast_agent:
        ds.ContrastBolusAgent = proto.contrast_agent
        ds.ContrastBolusRoute = "IV"
        ds.ContrastBolusVolume = "10"
    # Image Plane
    ds.PixelSpacing = [_ds(row_sp), _ds(col_sp)]
    ds.ImageOrientationPatient = [_ds(v) for v in (*volume.row_direction, *volume.column_direction)]
    ds.SliceThickness = _ds(volume.slice_thickness or volume.slice_spacing or 1.0)
    # Image Pixel
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = rep
    center, width = _window(volume.pixels)
    ds.WindowCenter = _ds(center)
    ds.WindowWidth = _ds(width)
    ds.WindowCenterWidthExplanation = "AUTO"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    return ds, dtype


def _acquisition_time(proto: _Protocol, k: int) -> str:
    # One breath-hold per slice, about 20 s apart.
    h, m, s = int(proto.series_time[:2]), int(proto.series_time[2:4]), int(proto.series_time[4:6])
    total = h * 3600 + m * 60 + s + 20 * k
    return f"{total // 3600:02d}{total % 3600 // 60:02d}{total % 60:02d}"


def _fill_slice(ds: Dataset, volume: Volume, proto: _Protocol, k: int, sop_uid: str,
                instance_number: int, pixels: np.ndarray, dtype: np.dtype) -> None:
    ds.SOPInstanceUID = sop_uid
    ds.InstanceNumber = instance_number
    ds.AcquisitionTime = _acquisition_time(proto, k)
    ds.ContentTime = ds.AcquisitionTime
    pos = volume.positions[k]
    ds.ImagePositionPatient = [_ds(v) for v in pos]
    ds.SliceLocation = _ds(float(pos @ volume.normal))
    ds.PixelData = np.ascontiguousarray(np.rint(pixels), dtype=dtype).tobytes()
    ds.file_meta = _file_meta(MR_IMAGE_STORAGE, sop_uid)


def series_datasets(volume: Volume, ctx: StudyContext, kind: SeriesKind = "lge") -> list[Dataset]:
    """One classic MR Image Storage dataset per slice (in memory)."""
    proto = PROTOCOLS[kind]
    series_uid = ctx.uid(kind, "series")
    template, dtype = _classic_template(volume, ctx, proto, series_uid)
    out = []
    for k in range(volume.shape[0]):
        ds = copy.deepcopy(template)
        _fill_slice(ds, volume, proto, k, ctx.uid(kind, "image", k), k + 1, volume.pixels[k], dtype)
        out.append(ds)
    return out


def write_series(volume: Volume, out_dir: str | os.PathLike[str], ctx: StudyContext,
                 kind: SeriesKind = "lge") -> list[Path]:
    """Write a classic MR series, one ``IMnnnn.dcm`` file per slice, into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, ds in enumerate(series_datasets(volume, ctx, kind)):
        p = out / f"IM{k + 1:04d}.dcm"
        ds.save_as(p, enforce_file_format=True)
        paths.append(p)
    return paths


# --------------------------------------------------------------------------- enhanced MR


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _seq(*items: Dataset) -> DicomSequence:
    return DicomSequence(list(items))


def _item(**attrs: object) -> Dataset:
    """A sequence item; floats for DS attributes are formatted to DICOM's 16 characters."""
    item = Dataset()
    for key, value in attrs.items():
        if isinstance(value, float) and dictionary_VR(key) == "DS":
            value = _ds(value)
        setattr(item, key, value)
    return item


def enhanced_mr_dataset(volume: Volume, ctx: StudyContext, kind: SeriesKind = "lge") -> Dataset:
    """One Enhanced MR Image Storage instance holding all slices as frames.

    Built with pydicom because highdicom only offers the Legacy Converted Enhanced MR IOD, not
    Enhanced MR. Geometry is per frame (Plane Position), orientation and pixel measures are in
    the shared functional groups; frames are ordered along the slice normal and indexed by
    Stack ID / In-Stack Position.
    """
    proto = PROTOCOLS[kind]
    series_uid = ctx.uid(kind, "enhanced-series")
    sop_uid = ctx.uid(kind, "enhanced-image")
    ds = _base_dataset(ctx, proto, series_uid, ENHANCED_MR_IMAGE_STORAGE)
    n, rows, cols = volume.shape
    row_sp, col_sp = volume.pixel_spacing
    dtype, bits, rep = _pixel_format(volume.pixels)
    acq_dt = ctx.study_date + proto.series_time

    ds.SOPInstanceUID = sop_uid
    ds.InstanceNumber = 1
    ds.ContentDate = ctx.study_date
    ds.ContentTime = proto.series_time
    ds.AcquisitionNumber = 1
    ds.AcquisitionDateTime = acq_dt
    ds.AcquisitionDuration = float(20 * n)
    # Enhanced MR Image + common CT/MR image description
    ds.ImageType = ["ORIGINAL", "PRIMARY", "CARDIAC", "NONE"]
    ds.PixelPresentation = "MONOCHROME"
    ds.VolumetricProperties = "VOLUME"
    ds.VolumeBasedCalculationTechnique = "NONE"
    ds.ComplexImageComponent = "MAGNITUDE"
    ds.AcquisitionContrast = proto.acquisition_contrast
    ds.ContentQualification = "PRODUCT"
    ds.ResonantNucleus = "1H"
    ds.KSpaceFiltering = "NONE"
    ds.ApplicableSafetyStandardAgency = "IEC"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.PresentationLUTShape = "IDENTITY"
    # MR Pulse Sequence
    ds.PulseSequenceName = proto.sequence_name.lstrip("*")
    ds.MRAcquisitionType = "2D"
    ds.EchoPulseSequence = proto.echo_pulse_sequence
    ds.MultiPlanarExcitation = "NO"
    ds.PhaseContrast = "NO"
    ds.TimeOfFlightContrast = "NO"
    ds.SteadyStatePulseSequence = proto.steady_state
    ds.EchoPlanarPulseSequence = "NO"
    ds.SaturationRecovery = "NO"
    ds.SpectrallySelectedSuppression = "NONE"
    ds.OversamplingPhase = "NONE"
    ds.GeometryOfKSpaceTraversal = "RECTILINEAR"
    ds.RectilinearPhaseEncodeReordering = "LINEAR"
    ds.SegmentedKSpaceTraversal = "PARTIAL"
    ds.NumberOfKSpaceTrajectories = 1
    # Acquisition Context
    ds.AcquisitionContextSequence = _seq()
    # Image Pixel
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = rep
    ds.NumberOfFrames = n

    # Multi-frame Dimension: stack / in-stack position
    dim_uid = ctx.uid(kind, "dimension-organization")
    ds.DimensionOrganizationSequence = _seq(_item(DimensionOrganizationUID=dim_uid))
    ds.DimensionOrganizationType = "3D"
    ds.DimensionIndexSequence = _seq(
        _item(DimensionOrganizationUID=dim_uid, DimensionIndexPointer=0x00209056,
              FunctionalGroupPointer=0x00209111, DimensionDescriptionLabel="Stack ID"),
        _item(DimensionOrganizationUID=dim_uid, DimensionIndexPointer=0x00209057,
              FunctionalGroupPointer=0x00209111, DimensionDescriptionLabel="In-Stack Position Number"),
    )

    center, width = _window(volume.pixels)
    shared = Dataset()
    shared.PixelMeasuresSequence = _seq(_item(
        PixelSpacing=[_ds(row_sp), _ds(col_sp)],
        SliceThickness=_ds(volume.slice_thickness or volume.slice_spacing or 1.0),
        SpacingBetweenSlices=_ds(volume.slice_spacing or volume.slice_thickness or 1.0),
    ))
    shared.PlaneOrientationSequence = _seq(_item(
        ImageOrientationPatient=[_ds(v) for v in (*volume.row_direction, *volume.column_direction)]
    ))
    shared.FrameAnatomySequence = _seq(_item(
        AnatomicRegionSequence=_seq(_code("80891009", "SCT", "Heart")), FrameLaterality="U"
    ))
    shared.FrameVOILUTSequence = _seq(_item(WindowCenter=_ds(center), WindowWidth=_ds(width)))
    shared.PixelValueTransformationSequence = _seq(_item(
        RescaleIntercept="0", RescaleSlope="1", RescaleType="US"
    ))
    shared.MRImageFrameTypeSequence = _seq(_item(
        FrameType=["ORIGINAL", "PRIMARY", "CARDIAC", "NONE"],
        PixelPresentation="MONOCHROME", VolumetricProperties="VOLUME",
        VolumeBasedCalculationTechnique="NONE", ComplexImageComponent="MAGNITUDE",
        AcquisitionContrast=proto.acquisition_contrast,
    ))
    shared.MRTimingAndRelatedParametersSequence = _seq(_item(
        RepetitionTime=proto.repetition_time, FlipAngle=proto.flip_angle, EchoTrainLength=1,
        RFEchoTrainLength=0, GradientEchoTrainLength=1,
        SpecificAbsorptionRateSequence=_seq(_item(
            SpecificAbsorptionRateDefinition="IEC_WHOLE_BODY", SpecificAbsorptionRateValue=0.8)),
        GradientOutputType="DB_DT", GradientOutput=20.0,
        OperatingModeSequence=_seq(*(
            _item(OperatingModeType=mode, OperatingMode="IEC_NORMAL")
            for mode in ("STATIC FIELD", "RF", "GRADIENT")
        )),
    ))
    shared.MRFOVGeometrySequence = _seq(_item(
        InPlanePhaseEncodingDirection="ROW",
        MRAcquisitionFrequencyEncodingSteps=cols,
        MRAcquisitionPhaseEncodingStepsInPlane=int(rows * 0.75),
        PercentSampling=100.0,
        PercentPhaseFieldOfView=100.0 * rows * row_sp / (cols * col_sp),
    ))
    shared.MREchoSequence = _seq(_item(EffectiveEchoTime=proto.echo_time))
    modifier = _item(
        InversionRecovery="YES" if proto.inversion_time is not None else "NO",
        FlowCompensation="NONE", T2Preparation="NO", SpatialPresaturation="NONE",
        PartialFourier="NO", ParallelAcquisition="NO", SpectrallySelectedExcitation="NONE",
    )
    if proto.inversion_time is not None:
        modifier.InversionTimes = [proto.inversion_time]
    shared.MRModifierSequence = _seq(modifier)
    shared.MRImagingModifierSequence = _seq(_item(
        MagnetizationTransfer="NONE", BloodSignalNulling="NO", Tagging="NONE",
        TransmitterFrequency=63.676, PixelBandwidth=465.0,
    ))
    shared.MRReceiveCoilSequence = _seq(_item(
        ReceiveCoilName="Body", ReceiveCoilManufacturerName=MANUFACTURER,
        ReceiveCoilType="BODY", QuadratureReceiveCoil="NO",
    ))
    shared.MRTransmitCoilSequence = _seq(_item(
        TransmitCoilName="Body", TransmitCoilManufacturerName=MANUFACTURER, TransmitCoilType="BODY",
    ))
    shared.MRAveragesSequence = _seq(_item(NumberOfAverages=1.0))
    shared.MRSpatialSaturationSequence = _seq()
    ds.SharedFunctionalGroupsSequence = _seq(shared)

    per_frame = []
    for k in range(n):
        item = Dataset()
        item.FrameContentSequence = _seq(_item(
            FrameAcquisitionNumber=k + 1,
            FrameReferenceDateTime=ctx.study_date + _acquisition_time(proto, k),
            FrameAcquisitionDateTime=ctx.study_date + _acquisition_time(proto, k),
            FrameAcquisitionDuration=300.0,
            StackID="1",
            InStackPositionNumber=k + 1,
            DimensionIndexValues=[1, k + 1],
        ))
        item.PlanePositionSequence = _seq(_item(
            ImagePositionPatient=[_ds(v) for v in volume.positions[k]]
        ))
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)

    ds.PixelData = np.ascontiguousarray(np.rint(volume.pixels), dtype=dtype).tobytes()
    ds.file_meta = _file_meta(ENHANCED_MR_IMAGE_STORAGE, sop_uid)
    return ds


def write_enhanced_series(volume: Volume, out_dir: str | os.PathLike[str], ctx: StudyContext,
                          kind: SeriesKind = "lge") -> list[Path]:
    """Write one Enhanced MR instance (``ENH0001.dcm``) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    p = out / "ENH0001.dcm"
    enhanced_mr_dataset(volume, ctx, kind).save_as(p, enforce_file_format=True)
    return [p]


# --------------------------------------------------------------------------- long stacks


def write_stack_series(slices: Sequence[np.ndarray] | np.ndarray, geometry: Volume, n: int, out_dir: str | os.PathLike[str],
                       ctx: StudyContext, *, slice_spacing: float = 1.0) -> list[Path]:
    """Write one classic MR series of ``n`` slices quickly (benchmarks, long series).

    Parameters
    ----------
    slices:
        ``(k, rows, cols)`` images, used in turn (slice ``i`` shows ``slices[i % k]``).
    geometry:
        Orientation, pixel spacing and first position of the stack (its pixels are not used).
    n:
        Number of slices; they are ``slice_spacing`` mm apart along ``geometry.normal``, so the
        result is one valid stack that `models.io.load_dicom_series` accepts.
    out_dir, ctx:
        Output folder (``IMnnnnn.dcm`` files) and the study's identifiers.

    Returns
    -------
    list[pathlib.Path]
        The files, in slice order.

    One template dataset is updated in place per slice, which keeps writing to a few ms a file.
    """
    stack = np.stack([slices[k % len(slices)] for k in range(n)])
    positions = geometry.positions[0] + np.outer(np.arange(n) * slice_spacing, geometry.normal)
    volume = replace(geometry, pixels=stack, positions=positions, slice_spacing=slice_spacing,
                     slice_thickness=slice_spacing)
    proto = PROTOCOLS["lge"]
    template, dtype = _classic_template(volume, ctx, proto, ctx.uid("lge", "series"))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for k in range(n):
        _fill_slice(template, volume, proto, k, ctx.uid("lge", "image", k), k + 1, stack[k], dtype)
        p = out / f"IM{k + 1:05d}.dcm"
        template.save_as(p, enforce_file_format=True)
        files.append(p)
    return files
