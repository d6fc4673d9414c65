"""The TensorFlow ops a SavedModel may hold for zoo to load it: an allow-list.

Everything here computes on tensors, variables and in-memory resources (hash
tables, tensor arrays/lists). Nothing here reads or writes a file, opens a
socket, talks to another process or calls back into Python. An op that is not
listed (datasets, readers, summaries, ``PyFunc``, ``WriteFile``, table
initialisers from text files, decoders, ...) makes zoo refuse the model.
``CHECKPOINT_OPS`` are allowed only in the saver's own save/restore graph
(``SaverDef``): TensorFlow's loader restores variables with them.
"""

from __future__ import annotations

_STRUCTURE = """
Const Placeholder PlaceholderWithDefault Identity IdentityN NoOp StopGradient PreventGradient Snapshot
PartitionedCall StatefulPartitionedCall If StatelessIf While StatelessWhile Case StatelessCase
Enter Exit Merge Switch NextIteration LoopCond RefEnter RefExit RefMerge RefSwitch RefNextIteration RefIdentity
ControlTrigger Assert CheckNumerics CheckNumericsV2 EnsureShape OptionalFromValue OptionalGetValue OptionalHasValue
OptionalNone
"""
_VARIABLES = """
VarHandleOp ReadVariableOp AssignVariableOp AssignAddVariableOp AssignSubVariableOp VarIsInitializedOp
DestroyResourceOp VariableShape DisableCopyOnRead ResourceGather ResourceGatherNd ResourceScatterUpdate
ResourceScatterAdd ResourceScatterSub ResourceScatterMul ResourceScatterDiv ResourceScatterMin ResourceScatterMax
ResourceScatterNdUpdate ResourceScatterNdAdd ResourceScatterNdSub ResourceStridedSliceAssign
Variable VariableV2 Assign AssignAdd AssignSub IsVariableInitialized StridedSliceAssign
HashTable HashTableV2 MutableHashTableV2 MutableHashTableOfTensorsV2 MutableDenseHashTableV2 InitializeTableV2
LookupTableFindV2 LookupTableImportV2 LookupTableSizeV2 LookupTableExportV2 LookupTableInsertV2 LookupTableRemoveV2
AnonymousHashTable AnonymousMutableHashTable
TensorArrayV3 TensorArrayReadV3 TensorArrayWriteV3 TensorArrayGatherV3 TensorArrayScatterV3 TensorArraySizeV3
TensorArrayConcatV3 TensorArraySplitV3 TensorArrayCloseV3
TensorListReserve TensorListFromTensor TensorListGetItem TensorListSetItem TensorListStack TensorListLength
TensorListPushBack TensorListPopBack TensorListElementShape EmptyTensorList TensorListConcatV2 TensorListGather
TensorListScatterV2 TensorListScatterIntoExistingList TensorListSplit TensorListResize
"""
_MATH = """
Abs Acos Acosh Add AddV2 AddN Asin Asinh Atan Atan2 Atanh Ceil Cos Cosh Digamma Div DivNoNan Elu Equal Erf Erfc
Erfinv Exp Expm1 Floor FloorDiv FloorMod Greater GreaterEqual Inv Reciprocal IsFinite IsInf IsNan Less LessEqual
Lgamma Log Log1p LogicalAnd LogicalNot LogicalOr Maximum Minimum Mod Mul MulNoNan Neg NextAfter NotEqual Pow
RealDiv Rint Round Rsqrt Selu Sigmoid Sign Sin Sinh Softplus Softsign Sqrt Square SquaredDifference Sub Tan Tanh
TruncateDiv TruncateMod Xdivy Xlog1py Xlogy BitwiseAnd BitwiseOr BitwiseXor Invert LeftShift RightShift
PopulationCount Relu Relu6 LeakyRelu ApproximateEqual ClipByValue Cast Bitcast Complex Real Imag ComplexAbs Conj
Angle Select SelectV2 Where Fill ZerosLike OnesLike Range LinSpace Cumsum Cumprod CumulativeLogsumexp Softmax
LogSoftmax BiasAdd BiasAddV1 MatMul BatchMatMul BatchMatMulV2 BatchMatMulV3 Einsum SparseMatMul Sum Prod Max Min
Mean All Any ArgMax ArgMin EuclideanNorm L2Loss TopK TopKV2 InTopKV2 Unique UniqueV2 UniqueWithCounts
UniqueWithCountsV2 Bincount DenseBincount Betainc Igamma Igammac Zeta Polygamma BesselI0e BesselI1e Ndtri
QuantizeAndDequantizeV2 QuantizeAndDequantizeV3 QuantizeAndDequantizeV4 FakeQuantWithMinMaxArgs
FakeQuantWithMinMaxVars FakeQuantWithMinMaxVarsPerChannel QuantizeV2 Dequantize Qr Svd SelfAdjointEigV2 Cholesky
MatrixInverse MatrixDeterminant LogMatrixDeterminant MatrixSolve MatrixTriangularSolve MatrixSquareRoot Lu
FFT IFFT RFFT IRFFT FFT2D IFFT2D RFFT2D IRFFT2D FFT3D IFFT3D RFFT3D IRFFT3D Cross HistogramFixedWidth
LowerBound UpperBound Bucketize SegmentSum SegmentMean SegmentMax SegmentMin SegmentProd UnsortedSegmentSum
UnsortedSegmentMax UnsortedSegmentMin UnsortedSegmentProd SparseSegmentSum SparseSegmentMean SparseSegmentSqrtN
"""
_NN = """
Conv2D Conv3D Conv Conv2DBackpropInput Conv3DBackpropInputV2 DepthwiseConv2dNative
DepthwiseConv2dNativeBackpropInput MaxPool MaxPoolV2 MaxPool3D AvgPool AvgPool3D MaxPoolWithArgmax FusedBatchNorm
FusedBatchNormV2 FusedBatchNormV3 LRN Dilation2D ResizeBilinear ResizeNearestNeighbor ResizeBicubic ResizeArea
ScaleAndTranslate CropAndResize ExtractImagePatches ExtractVolumePatches NonMaxSuppression NonMaxSuppressionV2
NonMaxSuppressionV3 NonMaxSuppressionV4 NonMaxSuppressionV5 CombinedNonMaxSuppression AdjustContrastv2 AdjustHue
AdjustSaturation RGBToHSV HSVToRGB SoftmaxCrossEntropyWithLogits SparseSoftmaxCrossEntropyWithLogits
RandomUniform RandomStandardNormal RandomUniformInt TruncatedNormal Multinomial RandomShuffle
StatelessRandomUniform StatelessRandomNormal StatelessTruncatedNormal StatelessRandomUniformInt
StatelessRandomUniformV2 StatelessRandomNormalV2 StatelessTruncatedNormalV2 StatelessRandomUniformIntV2
StatelessRandomUniformFullIntV2 StatelessRandomGetKeyCounter StatelessRandomGetAlg StatelessRandomGetKeyCounterAlg
StatelessMultinomial RngReadAndSkip RngSkip StatefulUniform StatefulUniformInt StatefulStandardNormalV2
StatefulTruncatedNormal
"""
_ARRAY = """
Reshape Shape ShapeN Size Rank Squeeze ExpandDims Transpose ConjugateTranspose Concat ConcatV2 ConcatOffset Split
SplitV Slice StridedSlice TensorStridedSliceUpdate TensorScatterUpdate TensorScatterAdd TensorScatterSub
TensorScatterMax TensorScatterMin ScatterNd Gather GatherV2 GatherNd Pack Unpack Tile Pad PadV2 MirrorPad
BroadcastTo BroadcastArgs BroadcastGradientArgs Reverse ReverseV2 ReverseSequence OneHot DepthToSpace SpaceToDepth
SpaceToBatchND BatchToSpaceND SpaceToBatch BatchToSpace MatrixDiag MatrixDiagV2 MatrixDiagV3 MatrixDiagPart
MatrixDiagPartV2 MatrixDiagPartV3 MatrixSetDiag MatrixSetDiagV2 MatrixSetDiagV3 MatrixBandPart Diag DiagPart
InvertPermutation ListDiff SetSize DynamicStitch ParallelDynamicStitch DynamicPartition Roll Empty
SparseToDense SparseTensorDenseMatMul SparseReshape SparseFillEmptyRows SparseReorder SparseAdd SparseConcat
SparseSlice SparseReduceSum SparseTensorDenseAdd
RaggedTensorToTensor RaggedRange RaggedGather RaggedTensorToSparse RaggedTensorFromVariant RaggedTensorToVariant
"""
_STRINGS = """
StringJoin StringSplit StringSplitV2 StringToNumber AsString RegexReplace StaticRegexReplace RegexFullMatch
StaticRegexFullMatch StringLength StringLower StringUpper StringStrip Substr StringToHashBucketFast
StringToHashBucket StringToHashBucketStrong StringFormat ReduceJoin UnicodeDecode UnicodeDecodeWithOffsets
UnicodeEncode UnicodeScript UnicodeTranscode
"""

COMPUTE_OPS = frozenset(" ".join([_STRUCTURE, _VARIABLES, _MATH, _NN, _ARRAY, _STRINGS]).split())

# The saver's graph (TF1: the nodes ``SaverDef.restore_op_name`` and ``save_tensor_name`` need; TF2: the
# functions they call) reads and writes checkpoints under the path the loader feeds it.
CHECKPOINT_OPS = frozenset("""
SaveV2 RestoreV2 MergeV2Checkpoints ShardedFilename ShardedFilespec Save SaveSlices Restore RestoreSlice
""".split())
