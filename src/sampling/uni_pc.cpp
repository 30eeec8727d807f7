// UniPC (Zhao et al. 2023) as ComfyUI runs it: comfy/extra_samplers/uni_pc.py sample_unipc with
// method "multistep", order min(3, len(sigmas) - 2), lower_order_final, predict_x0 (data
// prediction), no thresholding, on the SigmaConvert noise schedule in which the time variable is
// sigma itself: alpha = 1/sqrt(1 + sigma^2), sigma_vp = sqrt(1 - alpha^2), lambda = log(alpha/sigma_vp).
#include <algorithm>
#include <cmath>
#include <deque>
#include <utility>
#include <vector>

#include "sampling/float_ops.hpp"
#include "sampling/samplers_detail.hpp"

namespace unclip::sampling::detail {

namespace {

// SigmaConvert in float32, operation for operation: ComfyUI evaluates it on float32 tensors, and
// near sigma = 0.001 (where a final 0 is moved to) 1 - exp(2 log alpha) cancels badly: sigma_vp
// comes out as 2^-10 instead of 0.000999999 and lambda as 6.9315 instead of 6.9078. Reproducing
// it moves the last step exactly where ComfyUI's lands (the exact values would differ by ~1e-3).
float log_mean_coeff(float s) { return mul(0.5f, std::log(div(1.0f, add(mul(s, s), 1.0f)))); }
float alpha_of(float s) { return std::exp(log_mean_coeff(s)); }
float sigma_vp_of(float s) { return std::sqrt(sub(1.0f, std::exp(mul(2.0f, log_mean_coeff(s))))); }
float lambda_of(float s) {
    const float l = log_mean_coeff(s);
    return sub(l, mul(0.5f, std::log(sub(1.0f, std::exp(mul(2.0f, l))))));
}

struct Entry {
    float t;
    std::vector<float> m;  // the data prediction at t
};

// Solves the k x k system a * x = b (k <= 3) by Gaussian elimination with partial pivoting.
std::vector<double> solve(std::vector<std::vector<double>> a, std::vector<double> b) {
    const std::size_t k = b.size();
    for (std::size_t col = 0; col < k; ++col) {
        std::size_t pivot = col;
        for (std::size_t row = col + 1; row < k; ++row)
            if (std::fabs(a[row][col]) > std::fabs(a[pivot][col])) pivot = row;
        std::swap(a[col], a[pivot]);
        std::swap(b[col], b[pivot]);
        for (std::size_t row = col + 1; row < k; ++row) {
            const double f = a[row][col] / a[col][col];
            for (std::size_t c = col; c < k; ++c) a[row][c] -= f * a[col][c];
            b[row] -= f * b[col];
        }
    }
    std::vector<double> x(k);
    for (std::size_t row = k; row-- > 0;) {
        double sum = b[row];
        for (std::size_t c = row + 1; c < k; ++c) sum -= a[row][c] * x[c];
        x[row] = sum / a[row][row];
    }
    return x;
}

class UniPC {
public:
    UniPC(Run& run, bool bh2) : run_(run), bh2_(bh2), x_k_(run.n), d_(run.n) {}

    // UniPC.data_prediction_fn over model_wrapper(predict_eps_sigma): x is in VP scale.
    void predict(const float* x, float t, std::vector<float>& m) {
        const std::size_t n = run_.n;
        const float to_k = std::sqrt(t * t + 1.0f);
        for (std::size_t k = 0; k < n; ++k) x_k_[k] = x[k] * to_k;
        run_.denoise(x_k_.data(), t, d_.data());
        const float sigma_t = sigma_vp_of(t), alpha_t = alpha_of(t);
        m.resize(n);
        for (std::size_t k = 0; k < n; ++k) {
            const float eps = (x_k_[k] - d_[k]) / t;
            m[k] = (x[k] - sigma_t * eps) / alpha_t;
        }
    }

    // multistep_uni_pc_bh_update: from the newest history entry to t with order p; returns the
    // corrector's model evaluation (at the predicted sample) in m_t when use_corrector.
    void update(std::vector<float>& x, const std::deque<Entry>& history, float t, int p, bool use_corrector,
                std::vector<float>& m_t) {
        const std::size_t n = run_.n;
        const Entry& newest = history.back();
        const float lambda_s0 = lambda_of(newest.t), lambda_t = lambda_of(t);
        const float sigma_s0 = sigma_vp_of(newest.t), sigma_t = sigma_vp_of(t);
        const float alpha_t = std::exp(log_mean_coeff(t));
        const float h = lambda_t - lambda_s0;

        std::vector<double> rks;
        // (m_i - m_0) / r_i, newest-but-one first, in buffers kept across steps.
        const auto differences = static_cast<std::size_t>(p - 1);
        if (d1s_.size() < differences) d1s_.resize(differences);
        for (int i = 1; i < p; ++i) {
            const Entry& older = history[history.size() - 1 - static_cast<std::size_t>(i)];
            const float rk = (lambda_of(older.t) - lambda_s0) / h;
            rks.push_back(rk);
            std::vector<float>& d1 = d1s_[static_cast<std::size_t>(i - 1)];
            d1.resize(n);
            for (std::size_t k = 0; k < n; ++k) d1[k] = (older.m[k] - newest.m[k]) / rk;
        }
        rks.push_back(1.0);

        const double hh = -static_cast<double>(h);
        const double h_phi_1 = std::expm1(hh);
        const double b_h = bh2_ ? std::expm1(hh) : hh;
        double h_phi_k = h_phi_1 / hh - 1.0;
        double factorial = 1.0;
        std::vector<std::vector<double>> r_matrix;
        std::vector<double> b;
        for (int i = 1; i <= p; ++i) {
            std::vector<double> row;
            for (double r : rks) row.push_back(std::pow(r, i - 1));
            r_matrix.push_back(std::move(row));
            b.push_back(h_phi_k * factorial / b_h);
            factorial *= i + 1;
            h_phi_k = h_phi_k / hh - 1.0 / factorial;
        }

        std::vector<double> rhos_p, rhos_c;
        if (p >= 2) {
            if (p == 2) {
                rhos_p = {0.5};
            } else {
                std::vector<std::vector<double>> sub_matrix(static_cast<std::size_t>(p - 1));
                for (int i = 0; i < p - 1; ++i)
                    sub_matrix[static_cast<std::size_t>(i)].assign(r_matrix[static_cast<std::size_t>(i)].begin(),
                                                                   r_matrix[static_cast<std::size_t>(i)].begin() + (p - 1));
                rhos_p = solve(sub_matrix, std::vector<double>(b.begin(), b.end() - 1));
            }
        }
        if (use_corrector) rhos_c = p == 1 ? std::vector<double>{0.5} : solve(r_matrix, b);

        // x_t_ = (sigma_t / sigma_s0) x - alpha_t h_phi_1 m_0
        const float c_x = sigma_t / sigma_s0;
        const auto c_m = static_cast<float>(alpha_t * h_phi_1);
        const auto c_b = static_cast<float>(alpha_t * b_h);
        std::vector<float>& x_base = run_.scratch(0);
        for (std::size_t k = 0; k < n; ++k) x_base[k] = c_x * x[k] - c_m * newest.m[k];

        // At most two differences (order <= 3): written out, so the loops over n vectorise.
        const float* d1_0 = differences > 0 ? d1s_[0].data() : nullptr;
        const float* d1_1 = differences > 1 ? d1s_[1].data() : nullptr;
        const float rho_p0 = differences > 0 ? static_cast<float>(rhos_p[0]) : 0.0f;
        const float rho_p1 = differences > 1 ? static_cast<float>(rhos_p[1]) : 0.0f;
        std::vector<float>& x_pred = run_.scratch(1);
        for (std::size_t k = 0; k < n; ++k) {
            float pred_res = 0.0f;
            if (differences > 0) pred_res += d1_0[k] * rho_p0;
            if (differences > 1) pred_res += d1_1[k] * rho_p1;
            x_pred[k] = x_base[k] - c_b * pred_res;
        }
        if (!use_corrector) {
            x.swap(x_pred);
            return;
        }
        predict(x_pred.data(), t, m_t);
        const auto rho_last = static_cast<float>(rhos_c.back());
        const float rho_c0 = differences > 0 ? static_cast<float>(rhos_c[0]) : 0.0f;
        const float rho_c1 = differences > 1 ? static_cast<float>(rhos_c[1]) : 0.0f;
        for (std::size_t k = 0; k < n; ++k) {
            float corr_res = 0.0f;
            if (differences > 0) corr_res += d1_0[k] * rho_c0;
            if (differences > 1) corr_res += d1_1[k] * rho_c1;
            const float d1_t = m_t[k] - newest.m[k];
            x[k] = x_base[k] - c_b * (corr_res + rho_last * d1_t);
        }
    }

    void report(int step, float t, const std::vector<float>& x, const std::vector<float>& m) {
        if (!run_.options.on_step) return;
        const float to_k = 1.0f / alpha_of(t);
        for (std::size_t k = 0; k < run_.n; ++k) x_k_[k] = x[k] * to_k;
        run_.report(step, t, x_k_.data(), m.data());
    }

private:
    Run& run_;
    bool bh2_;
    std::vector<float> x_k_, d_;
    std::vector<std::vector<float>> d1s_;
};

}  // namespace

void uni_pc(Run& run, bool bh2) {
    // sample_unipc: a final sigma of 0 becomes 0.001; the sampler works on x / sqrt(1 + sigma_0^2).
    std::vector<float> ts = run.sigmas();
    if (ts.back() == 0.0f) ts.back() = 0.001f;
    const int steps = static_cast<int>(ts.size()) - 1;
    const int order = std::min(3, static_cast<int>(ts.size()) - 2);

    const std::size_t n = run.n;
    const float to_vp = std::sqrt(1.0f + ts[0] * ts[0]);
    std::vector<float> x(run.x, run.x + n);
    for (float& v : x) v = v / to_vp;

    UniPC solver(run, bh2);
    std::deque<Entry> history;
    history.push_back({ts[0], {}});
    solver.predict(x.data(), ts[0], history.back().m);
    solver.report(0, ts[0], x, history.back().m);

    // UniPC.sample: a warm-up of increasing order, then order `order` lowered towards the end
    // (lower_order_final); the corrector's model evaluation is reused as the next history value,
    // so the run costs `steps` evaluations. With one step (order 0) ComfyUI does no update at all.
    std::vector<float> m_t;
    for (int k = 1; order > 0 && k <= steps; ++k) {
        const int p = k < order ? k : std::min(order, steps + 1 - k);
        const bool use_corrector = k < steps;
        solver.update(x, history, ts[static_cast<std::size_t>(k)], p, use_corrector, m_t);
        if (!use_corrector) break;
        // The history takes m_t's storage, and the entry it drops lends its storage to the next m_t.
        history.push_back({ts[static_cast<std::size_t>(k)], std::move(m_t)});
        m_t = {};
        if (static_cast<int>(history.size()) > order) {
            m_t = std::move(history.front().m);
            history.pop_front();
        }
        solver.report(k, ts[static_cast<std::size_t>(k)], x, history.back().m);
    }

    const float from_vp = alpha_of(ts.back());
    for (std::size_t k = 0; k < n; ++k) run.x[k] = x[k] / from_vp;
}

}  // namespace unclip::sampling::detail
