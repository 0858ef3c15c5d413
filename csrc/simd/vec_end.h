/* vec_end.h -- the end of a vocabulary's scope: every name a vec_<isa>_<dtype>.h defines, so the
 * next one (another dtype or ISA) starts clean. These names are the SIMD vocabulary of every
 * kernel family (gemm/, ops/, simd/vmath_*.inc):
 *   VL VEC                       lanes, the vector type
 *   VZERO VSET1 VLOAD VSTORE     (unaligned loads and stores)
 *   VADD VSUB VMUL VDIV VFMA VFNMA VSQRT VMAXV VMINV VABS VANDNOT VXOR VROUND VCOPYSIGN
 *   VHSUM VHMAX                  horizontal sum and max (a fixed order)
 *   MASK_T VMASK(n) VLOADM VSTOREM   the first n lanes: masked load (0 elsewhere), store
 *   CMASK_T CMASK_ZERO CMASK_OR CMASK_ANY CMASK_OF VCMPLT VCMPGE VCMPGT VCMPNE VUNORD
 *                                VBLEND
 *                                comparison masks; VBLEND(m, a, b) = m ? b : a per lane
 *   VBLEND_LT(x, c, a, b) = x < c ? a : b;  VBLEND_LT0(z, a, b) = z < 0 ? a : b
 *   VRELU VLEAKY                 max(0, v); v < 0 ? v s : v
 *   VSCALE(p, n) VSCALE_NEG(p, n)  p 2^n rounded once (n <= 0 for VSCALE_NEG)
 *   VWIDE_LO VWIDE_HI VNARROW VWIDE   float32 only: float64 lanes (vmath_wide.inc)
 *   VINT VCVTI(v) VLOOKUP16(t, i)     float32 only: int32 lanes, v rounded to them (to
 *                                nearest), t[i & 15] per lane from a table of 16 floats
 */
#undef VL
#undef VEC
#undef VZERO
#undef VSET1
#undef VLOAD
#undef VSTORE
#undef VADD
#undef VSUB
#undef VMUL
#undef VDIV
#undef VFMA
#undef VFNMA
#undef VSQRT
#undef VMAXV
#undef VMINV
#undef VABS
#undef VANDNOT
#undef VXOR
#undef VROUND
#undef VCOPYSIGN
#undef VHSUM
#undef VHMAX
#undef MASK_T
#undef VMASK
#undef VLOADM
#undef VSTOREM
#undef CMASK_T
#undef CMASK_ZERO
#undef CMASK_OR
#undef CMASK_ANY
#undef CMASK_OF
#undef VCMPLT
#undef VCMPGE
#undef VCMPGT
#undef VCMPNE
#undef VUNORD
#undef VBLEND
#undef VBLEND_LT
#undef VBLEND_LT0
#undef VRELU
#undef VLEAKY
#undef VPOW2I
#undef VSCALE
#undef VSCALE_NEG
#undef VWIDE_LO
#undef VWIDE_HI
#undef VNARROW
#undef VWIDE
#undef VINT
#undef VCVTI
#undef VLOOKUP16
