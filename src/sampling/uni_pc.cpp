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

using backend::LatentUpdate;

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
    float* m;  // the data prediction at t
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
    UniPC(Run& run, bool bh2) : run_(run), bh2_(bh2), x_k_(run.ops.buffer(run.n)), d_(run.ops.buffer(run.n)) {}

    // UniPC.data_prediction_fn over model_wrapper(predict_eps_sigma): x is in VP scale.
    void predict(const float* x, float t, float* m) {
        run_.update(LatentUpdate::scale, x_k_, {x}, {std::sqrt(t * t + 1.0f)});
        run_.denoise(x_k_, t, d_);
        // eps = (x_k - D) / t; m = (x - sigma_t eps) / alpha_t
        run_.update(LatentUpdate::data_prediction, m, {x, x_k_, d_}, {sigma_vp_of(t), t, alpha_of(t)});
    }

    // multistep_uni_pc_bh_update: from the newest history entry to t with order p, x updated in
    // place; when use_corrector, m_t receives the corrector's model evaluation (at the predicted
    // sample).
    void update(float* x, const std::deque<Entry>& history, float t, int p, bool use_corrector, float* m_t) {
        const Entry& newest = history.back();
        const float lambda_s0 = lambda_of(newest.t), lambda_t = lambda_of(t);
        const float sigma_s0 = sigma_vp_of(newest.t), sigma_t = sigma_vp_of(t);
        const float alpha_t = std::exp(log_mean_coeff(t));
        const float h = lambda_t - lambda_s0;

        std::vector<double> rks;
        // (m_i - m_0) / r_i, newest-but-one first.
        const auto differences = static_cast<std::size_t>(p - 1);
        for (int i = 1; i < p; ++i) {
            const Entry& older = history[history.size() - 1 - static_cast<std::size_t>(i)];
            const float rk = (lambda_of(older.t) - lambda_s0) / h;
            rks.push_back(rk);
            run_.update(LatentUpdate::difference_over, d1(static_cast<std::size_t>(i - 1)), {older.m, newest.m}, {rk});
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
        float* x_base = run_.scratch(0);
        run_.combine(x_base, c_x, x, -c_m, newest.m);

        // At most two differences (order <= 3).
        const float* d1_0 = differences > 0 ? d1(0) : nullptr;
        const float* d1_1 = differences > 1 ? d1(1) : nullptr;
        const auto rho = [&](const std::vector<double>& rhos, std::size_t i) {
            return i < differences ? static_cast<float>(rhos[i]) : 0.0f;
        };
        backend::LatentUpdateArgs combination;
        combination.kind = LatentUpdate::uni_pc;
        combination.n = static_cast<std::int64_t>(run_.n);
        combination.count = static_cast<int>(differences);
        combination.in[0] = x_base;
        combination.in[1] = d1_0;
        combination.in[2] = d1_1;
        combination.c[0] = c_b;
        float* x_pred = run_.scratch(1);
        if (!use_corrector) {
            combination.out = x;
            combination.c[1] = rho(rhos_p, 0);
            combination.c[2] = rho(rhos_p, 1);
            run_.ops.update(combination);
            return;
        }
        combination.out = x_pred;
        combination.c[1] = rho(rhos_p, 0);
        combination.c[2] = rho(rhos_p, 1);
        run_.ops.update(combination);
        predict(x_pred, t, m_t);
        // x = x_base - c_b (sum rho_c d1 + rho_last (m_t - m_0))
        combination.out = x;
        combination.c[1] = rho(rhos_c, 0);
        combination.c[2] = rho(rhos_c, 1);
        combination.c[3] = static_cast<float>(rhos_c.back());
        combination.in[3] = m_t;
        combination.in[4] = newest.m;
        run_.ops.update(combination);
    }

    void report(int step, float t, const float* x, const float* m) {
        if (!run_.options.on_step) {
            run_.ops.step_queued();
            return;
        }
        run_.update(LatentUpdate::scale, x_k_, {x}, {1.0f / alpha_of(t)});
        run_.report(step, t, x_k_, m);
    }

private:
    float* d1(std::size_t i) {
        while (d1s_.size() <= i) d1s_.push_back(run_.ops.buffer(run_.n));
        return d1s_[i];
    }
    Run& run_;
    bool bh2_;
    float *x_k_, *d_;
    std::vector<float*> d1s_;
};

}  // namespace

void uni_pc(Run& run, bool bh2) {
    // sample_unipc: a final sigma of 0 becomes 0.001; the sampler works on x / sqrt(1 + sigma_0^2).
    std::vector<float> ts = run.sigmas();
    if (ts.back() == 0.0f) ts.back() = 0.001f;
    const int steps = static_cast<int>(ts.size()) - 1;
    const int order = std::min(3, static_cast<int>(ts.size()) - 2);

    float* x = run.ops.buffer(run.n);
    run.update(LatentUpdate::divide, x, {run.x}, {std::sqrt(1.0f + ts[0] * ts[0])});

    UniPC solver(run, bh2);
    // The history's data predictions: order entries, plus one for the corrector's newest.
    std::vector<float*> free_predictions;
    for (int i = 0; i <= std::max(order, 1); ++i) free_predictions.push_back(run.ops.buffer(run.n));
    const auto take = [&] {
        float* m = free_predictions.back();
        free_predictions.pop_back();
        return m;
    };
    std::deque<Entry> history;
    history.push_back({ts[0], take()});
    solver.predict(x, ts[0], history.back().m);
    solver.report(0, ts[0], x, history.back().m);

    // UniPC.sample: a warm-up of increasing order, then order `order` lowered towards the end
    // (lower_order_final); the corrector's model evaluation is reused as the next history value,
    // so the run costs `steps` evaluations. With one step (order 0) ComfyUI does no update at all.
    for (int k = 1; order > 0 && k <= steps; ++k) {
        const int p = k < order ? k : std::min(order, steps + 1 - k);
        const bool use_corrector = k < steps;
        float* m_t = use_corrector ? take() : nullptr;
        solver.update(x, history, ts[static_cast<std::size_t>(k)], p, use_corrector, m_t);
        if (!use_corrector) break;
        history.push_back({ts[static_cast<std::size_t>(k)], m_t});
        if (static_cast<int>(history.size()) > order) {
            free_predictions.push_back(history.front().m);
            history.pop_front();
        }
        solver.report(k, ts[static_cast<std::size_t>(k)], x, history.back().m);
    }

    run.update(LatentUpdate::divide, run.x, {x}, {alpha_of(ts.back())});
}

}  // namespace unclip::sampling::detail
