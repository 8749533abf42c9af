// act.glsl — the activation functions the shaders share, written out
// rather than taken from GLSL's tanh (whose precision Vulkan leaves to the
// driver, and whose usual form (e^2x − 1)/(e^2x + 1) loses all digits near
// 0 and overflows to NaN past |x| ≈ 44) or an erf GLSL does not have.

// tanh(x) to a few float ulps everywhere: a Taylor series near 0 (its
// remainder past x⁹ is below 1e-8 of the result for |x| < 0.25), and
// (1 − e^−2|x|)/(1 + e^−2|x|) beyond, where the subtraction keeps its digits
// and e^−2|x| underflows to 0 rather than overflowing.
float slm_tanh(float x)
{
    float a = abs(x);
    if (a < 0.25) {
        float x2 = x * x;
        return x * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 + x2 * (-17.0 / 315.0 +
                                                                   x2 * (62.0 / 2835.0)))));
    }
    float e = exp(-2.0 * a);
    return sign(x) * ((1.0 - e) / (1.0 + e));
}

// 0.5·x·(1 + tanh(u)), u = sqrt(2/π)·(x + 0.044715·x³), as x·sigmoid(2u):
// 1 + tanh(u) = 2/(1 + e^−2u) has no cancellation for negative x.
float slm_gelu_tanh(float x)
{
    float u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
    return x / (1.0 + exp(-2.0 * u));
}

// erfc(z) with a relative error under 1.2e-7 for every z (Numerical
// Recipes' Chebyshev fit, erfcc), so erfc of large z keeps its digits.
float slm_erfc(float z)
{
    float a = abs(z);
    float t = 1.0 / (1.0 + 0.5 * a);
    float p = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
              t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
              t * (-0.82215223 + t * 0.17087277))))))));
    float r = t * exp(-a * a + p);
    return z >= 0.0 ? r : 2.0 - r;
}

// The exact GELU, 0.5·x·(1 + erf(x/√2)) = 0.5·x·erfc(−x/√2): the erfc form
// keeps the relative precision of the small tail for negative x.
float slm_gelu_erf(float x)
{
    return 0.5 * x * slm_erfc(-0.7071067811865476 * x);
}
